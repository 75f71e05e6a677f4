# bash completion for kmsfleetctl: subcommands and their flags.
_kmsfleetctl() {
  local cur prev words cword
  _init_completion || return
  local top="status node leader plan"
  local cmd="" sub=""
  local i
  for ((i = 1; i < cword; i++)); do
    case "${words[i]}" in
      -*) ;;
      *) if [[ -z $cmd ]]; then cmd=${words[i]}; elif [[ -z $sub ]]; then sub=${words[i]}; fi ;;
    esac
  done
  case "$prev" in
    --output|-o) COMPREPLY=($(compgen -W "table json" -- "$cur")); return ;;
    --source|--checksums|--signature|--ca|--cert|--key) _filedir; return ;;
  esac
  local words_for=""
  case "$cmd" in
    "") words_for="$top --help --version" ;;
    status) words_for="--agent --output --timeout-ms --help" ;;
    leader) words_for="--agent --output --timeout-ms --ca --cert --key --server-name --help" ;;
    plan)
      case "$sub" in
        "") words_for="commit --help" ;;
        commit) words_for="--agent --in-flight --payload --timeout-ms --ca --cert --key --server-name --help" ;;
      esac ;;
    node)
      case "$sub" in
        "") words_for="stage preflight swap rollback operation --agent --timeout-ms --help" ;;
        stage) words_for="--version --source --checksums --signature --artifact-name --help" ;;
        preflight) words_for="--version --help" ;;
        swap) words_for="--version --expected-key-id-hash --stabilization-ms --operation-id --fence --no-wait --help" ;;
        rollback) words_for="--of --expected-key-id-hash --stabilization-ms --operation-id --fence --no-wait --help" ;;
        operation) words_for="--id --no-wait --help" ;;
      esac ;;
  esac
  COMPREPLY=($(compgen -W "$words_for" -- "$cur"))
}
complete -F _kmsfleetctl kmsfleetctl
