#!/usr/bin/env bash
# Keeps docs/grpc-api.md in step with the protos and docs/ with reasons.h:
#   - every service in PROTO_DIR/**/*.proto has a "## <package>.<Service>"
#     section in API_DOC, and every rpc a "### <Service>.<Rpc>" heading;
#   - every "### <Service>.<Rpc>" heading in API_DOC names a real rpc (or
#     one of the standard services the agent serves from gRPC itself);
#   - every reason code in REASONS_H appears, as a whole word, in some
#     page under DOCS_DIR.
# Usage: check_grpc_docs.sh PROTO_DIR API_DOC REASONS_H DOCS_DIR
# Exit 0 when all hold; 1 with one line per gap otherwise.
set -euo pipefail
proto_dir=$1 api_doc=$2 reasons_h=$3 docs_dir=$4
gaps=0
gap() { echo "check_grpc_docs: $*"; gaps=$((gaps + 1)); }

# Services from gRPC itself that kmsfleetd serves; their protos are not ours.
known_rpcs="Health.Check Health.Watch"
while IFS= read -r proto; do
  package=$(sed -n 's/^package \([A-Za-z0-9_.]*\);.*/\1/p' "$proto")
  # "service S {" ... "}" blocks: print "S R" for each rpc R in S.
  while read -r service rpc; do
    if [[ $rpc == "-" ]]; then
      grep -qx "## ${package}.${service}" "$api_doc" ||
        gap "$api_doc has no section \"## ${package}.${service}\" ($proto)"
    else
      known_rpcs+=" ${service}.${rpc}"
      grep -qx "### ${service}.${rpc}" "$api_doc" ||
        gap "$api_doc has no heading \"### ${service}.${rpc}\" ($proto)"
    fi
  done < <(awk '
    /^service [A-Za-z0-9_]+/ { service = $2; print service, "-"; next }
    service != "" && /^}/ { service = ""; next }
    service != "" && /^[ \t]*rpc [A-Za-z0-9_]+/ {
      name = $2; sub(/\(.*/, "", name); print service, name }
  ' "$proto")
done < <(find "$proto_dir" -name '*.proto' | sort)

while IFS= read -r heading; do
  [[ " $known_rpcs " == *" $heading "* ]] ||
    gap "$api_doc documents \"### $heading\", which no proto declares"
done < <(sed -n 's/^### \([A-Za-z0-9_]*\.[A-Za-z0-9_]*\)$/\1/p' "$api_doc")

codes=$(sed -n 's/.*inline constexpr char k[A-Za-z0-9]*\[\] *= *"\([A-Z0-9_]*\)".*/\1/p' "$reasons_h")
# Definitions split over two lines keep the string on the second.
codes+=" $(sed -n 's/^ *"\([A-Z0-9_]*\)";$/\1/p' "$reasons_h")"
[[ -n ${codes// /} ]] || gap "no reason codes found in $reasons_h"
for code in $codes; do
  grep -rqw --include='*.md' -- "$code" "$docs_dir" ||
    gap "reason code $code ($reasons_h) is not described under $docs_dir"
done

if ((gaps > 0)); then
  echo "check_grpc_docs: $gaps gap(s)"
  exit 1
fi
echo "check_grpc_docs: every service, rpc and reason code is documented"
