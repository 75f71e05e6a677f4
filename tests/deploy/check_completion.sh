#!/usr/bin/env bash
# The bash completion must offer every subcommand and every flag that
# kmsfleetctl's own --help lists, and nothing it does not. The completion
# function runs for real, with bash-completion's two helpers stubbed.
#   check_completion.sh KMSFLEETCTL COMPLETION_FILE
set -euo pipefail
ctl=$1 completion=$2
_init_completion() {
  words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
  cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
}
_filedir() { COMPREPLY=(); }
# shellcheck source=/dev/null
source "$completion"
gaps=0

# complete WORD...: what the completion offers after "kmsfleetctl WORD... ".
complete_after() {
  COMP_WORDS=(kmsfleetctl "$@" "") COMP_CWORD=$(($# + 1)) COMPREPLY=()
  _kmsfleetctl
  printf '%s\n' "${COMPREPLY[@]}" | sort -u
}
# What --help lists: subcommands (after "Subcommands:") and long flags.
help_words() {
  "$ctl" "$@" --help 2>&1 | awk '
    /^Subcommands:/ { subs = 1; next }
    subs && /^  [a-z]/ { print $1; next }
    { while (match($0, /--[a-z][a-z0-9-]*/)) { print substr($0, RSTART, RLENGTH); $0 = substr($0, RSTART + RLENGTH) } }
  ' | sort -u
}
compare() {  # compare WORD...
  local want got
  want=$(help_words "$@")
  got=$(complete_after "$@")
  if [[ $want != "$got" ]]; then
    echo "completion after 'kmsfleetctl $*' differs from --help (< help, > completion):"
    diff <(echo "$want") <(echo "$got") | grep '^[<>]' || true
    gaps=$((gaps + 1))
  fi
}

compare
for cmd in $("$ctl" --help | awk '/^Subcommands:/ { s = 1; next } s && /^  [a-z]/ { print $1 }'); do
  compare "$cmd"
  for sub in $("$ctl" "$cmd" --help 2>&1 | awk '/^Subcommands:/ { s = 1; next } s && /^  [a-z]/ { print $1 }'); do
    compare "$cmd" "$sub"
  done
done
((gaps == 0)) && echo "completion matches kmsfleetctl --help"
exit $((gaps > 0))
