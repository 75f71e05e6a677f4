#!/usr/bin/env bash
# Checks deploy/prometheus/kmsfleet-alerts.yaml with Prometheus's own tool:
#   - `promtool check rules` accepts it (YAML, PromQL, templates);
#   - `promtool test rules` passes its unit tests (kmsfleet-alerts_test.yaml);
#   - every alert carries a severity, a summary, a description and a
#     runbook, and the tests make every alert both fire and stay quiet, so
#     a new rule cannot ship untested. (Both files are written in YAML's
#     block style, which the awk below reads; anything else fails here.)
#   check_alert_rules.sh RULES TESTS
set -euo pipefail
rules=${1:?rules file}
tests=${2:?promtool test file}

promtool check rules "$rules"
promtool test rules "$tests"

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# One line per alert: name and the keys its rule sets, from the rules file.
alerts=$(awk '
  /^ *- alert: / { if (name) print name, keys; name = $3; keys = ""; next }
  name && /^ *(severity|summary|description|runbook):/ { sub(/:.*/, ""); gsub(/ /, ""); keys = keys " " $0 }
  END { if (name) print name, keys }' "$rules")
[ -n "$alerts" ] || fail "no alerts found in $rules"

# "NAME fires" / "NAME quiet" for each alert_rule_test in the test file.
outcomes=$(awk '
  /^ *alertname: / { name = $2; next }
  name && /^ *exp_alerts: *\[\] *$/ { print name, "quiet"; name = ""; next }
  name && /^ *exp_alerts: *$/ { print name, "fires"; name = ""; next }' "$tests")

while read -r name keys; do
  for key in severity summary description runbook; do
    case " $keys " in *" $key "*) ;; *) fail "$name has no $key" ;; esac
  done
  grep -qx "$name fires" <<<"$outcomes" || fail "no test makes $name fire"
  grep -qx "$name quiet" <<<"$outcomes" || fail "no test keeps $name quiet"
done <<<"$alerts"

count=$(wc -l <<<"$alerts")
if [ "$failures" -ne 0 ]; then echo "$failures failed" >&2; exit 1; fi
echo "$count alerts: checked, tested firing and quiet"
