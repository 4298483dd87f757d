"""One module per ``minireptile`` command; each defines ``add_parser(subparsers)``."""
