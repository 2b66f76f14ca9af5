from medgap.cli import main

main()
