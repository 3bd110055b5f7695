from pmupart.cli import main

main()
