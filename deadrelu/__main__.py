from deadrelu.cli import main

main()
