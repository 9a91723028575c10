"""Sub-commands of the `longvid` CLI; each module exposes `register(subparsers)`."""
