"""``python -m serving``: run the service configured by environment variables."""

from serving.server import main

main()
