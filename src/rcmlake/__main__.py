from rcmlake.cli import main

main()
