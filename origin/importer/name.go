package importer

import "strings"

// slugName derives an API name from a document title: lower-case letters
// and digits, other runs of characters turned into single '-', at most 64
// bytes, so that it satisfies config.CheckAPIName. "Swagger Petstore"
// becomes "swagger-petstore". A title with nothing usable gives "api".
func slugName(title string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(title) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		case r == '\'' || r == '\u2019':
			// "GitHub's" reads better as "githubs" than "github-s".
		default:
			dash = true
		}
		if b.Len() >= 64 {
			break
		}
	}
	s := strings.TrimRight(b.String(), "-")
	if len(s) > 64 {
		s = strings.TrimRight(s[:64], "-")
	}
	if s == "" {
		return "api"
	}
	return s
}
