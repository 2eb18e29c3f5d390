from relocpy.cli import main

main()
