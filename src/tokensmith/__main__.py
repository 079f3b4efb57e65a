from tokensmith.cli.main import main

main()
