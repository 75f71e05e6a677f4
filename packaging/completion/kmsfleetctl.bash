# bash completion for kmsfleetctl: subcommands and their flags.
# tests/deploy/check_completion.sh compares it with `kmsfleetctl --help`.
_kmsfleetctl() {
  local cur prev words cword
  _init_completion || return
  local top="status node leader plan upgrade rollback pause resume abort watch history ack-break-glass health"
  local tls="--ca --cert --key --server-name --insecure"
  local fleet="--agent --output $tls"
  local cmd="" sub=""
  local i
  for ((i = 1; i < cword; i++)); do
    case "${words[i]}" in
      -*) ;;
      *) if [[ -z $cmd ]]; then cmd=${words[i]}; elif [[ -z $sub ]]; then sub=${words[i]}; fi ;;
    esac
  done
  case "$prev" in
    --output|-o)
      # The node commands print JSON only.
      if [[ $cmd == node ]]; then COMPREPLY=($(compgen -W "json" -- "$cur"))
      else COMPREPLY=($(compgen -W "table json" -- "$cur")); fi
      return ;;
    --source|--checksums|--signature|--artifact|--image-ref|--policy|--changelog|--ca|--cert|--key)
      _filedir; return ;;
  esac
  local words_for=""
  case "$cmd" in
    "") words_for="$top --help --version" ;;
    status|leader) words_for="--agent --output --timeout-ms $tls --help" ;;
    health) words_for="--agent --output --timeout-ms $tls --help" ;;
    upgrade) words_for="$fleet --to --artifact --checksums --signature --image --image-ref --policy --changelog --soak --stabilization --parity-observations --acknowledge --order --auto-rollback --remote-paths --dry-run --watch --help" ;;
    rollback) words_for="$fleet --dry-run --watch --help" ;;
    pause|resume|abort|ack-break-glass) words_for="$fleet --watch --help" ;;
    watch|history) words_for="$fleet --help" ;;
    plan)
      case "$sub" in
        "") words_for="commit $fleet --help" ;;
        commit) words_for="--agent --output --in-flight --payload --timeout-ms $tls --help" ;;
      esac ;;
    node)
      case "$sub" in
        "") words_for="stage preflight swap rollback operation --agent --timeout-ms $tls --help" ;;
        stage) words_for="--version --source --checksums --signature --artifact-name --image --image-ref --output --help" ;;
        preflight) words_for="--version --output --help" ;;
        swap) words_for="--version --expected-key-id-hash --stabilization-ms --operation-id --fence --no-wait --expected-digest --acknowledge --output --help" ;;
        rollback) words_for="--of --expected-key-id-hash --stabilization-ms --operation-id --fence --no-wait --output --help" ;;
        operation) words_for="--id --no-wait --output --help" ;;
      esac ;;
  esac
  COMPREPLY=($(compgen -W "$words_for" -- "$cur"))
}
complete -F _kmsfleetctl kmsfleetctl
