#!/usr/bin/env bash
# Fetches the large real OpenAPI documents the importer's tests and
# benchmarks use, which are too big to commit: GitHub's REST API description
# (OpenAPI 3.0.3, 13 MB), as published in the npm package @octokit/openapi.
#
# The package is pinned by version and by its registry integrity hash, and
# unpacked into .cache/ beside this script (gitignored). Running the script
# again does nothing once the files are there. Needs npm and tar.
#
#   test/testdata/openapi/fetch.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pkg="@octokit/openapi"
version="23.0.2"
# From `npm view @octokit/openapi@23.0.2 dist.integrity`.
integrity="sha512-pV8M7L9GY23AybNvTmo2nyjmpmnt6+2sRE/tqr0ZLQcPS4lnw7u5eZGNmwRNkBC3D7gZXbFx5AHzLUVRBXGDhg=="
dest="$here/.cache/octokit-openapi-$version"
want="generated/api.github.com.json"

if [[ -s "$dest/$want" ]]; then
	echo "fetch.sh: $dest/$want is already there"
	exit 0
fi
for tool in npm node tar; do
	command -v "$tool" >/dev/null || { echo "fetch.sh: $tool is needed (apt-get install nodejs npm tar)" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$pkg@$version" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
got="$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$tarball")"
if [[ "$got" != "$integrity" ]]; then
	echo "fetch.sh: $pkg@$version does not have the pinned integrity ($got)" >&2
	exit 1
fi
mkdir -p "$dest"
tar -xzf "$tarball" -C "$work" "package/$want" "package/LICENSE"
mkdir -p "$dest/generated"
mv "$work/package/$want" "$dest/$want"
mv "$work/package/LICENSE" "$dest/LICENSE"
echo "fetch.sh: unpacked $pkg@$version $want into $dest"
