package origin

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/plugins"
)

// maxUsageReportBytes bounds a usage report's body: MaxUsageDeltas counts
// of about 100 bytes each, with room to spare.
const maxUsageReportBytes = 4 << 20

// serveUsage receives an edge's usage report (edge/usage) on the data
// plane, behind its edge token check, and adds it to the stored usage.
func (o *Origin) serveUsage(w http.ResponseWriter, r *http.Request) {
	var rep control.UsageReport
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxUsageReportBytes))
	if err := dec.Decode(&rep); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			plugins.WriteError(w, http.StatusRequestEntityTooLarge, "the usage report is larger than 4 MiB; send fewer counts per report")
			return
		}
		plugins.WriteError(w, http.StatusBadRequest, "the usage report is not valid JSON: "+err.Error())
		return
	}
	res, err := o.Control.RecordUsage(r.Context(), rep)
	if err != nil {
		if control.KindOf(err) == control.Invalid {
			plugins.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		o.log.Error("cannot record a usage report; the edge will retry it", "report", rep.ID, "err", err)
		plugins.WriteError(w, http.StatusInternalServerError, "the usage report could not be stored; retry it")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}
