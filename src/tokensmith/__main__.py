from tokensmith.cli.entry import main

main()
