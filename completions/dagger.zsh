#compdef dagger

_dagger_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _DAGGER_COMPLETE=complete_zsh dagger)
}

compdef _dagger_completion dagger
