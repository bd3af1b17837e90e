#!/usr/bin/env bash
# Regenerates the shell completion scripts from the installed `dagger` command (tests check they are current).
set -euo pipefail
cd "$(dirname "$0")"
for shell in bash zsh fish; do
  _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION=1 dagger --show-completion "$shell" > "dagger.$shell"
done
