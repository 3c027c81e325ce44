from nacento_sync.cli import main

main()
