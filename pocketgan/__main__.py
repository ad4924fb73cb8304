from pocketgan.cli import main; import sys; sys.exit(main())
