from stepwatch.cli import main

main()
