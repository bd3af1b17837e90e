from dagger_cli.cli.main import main

main()
