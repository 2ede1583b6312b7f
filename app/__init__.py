"""The PySide6 desktop app on top of `engine`."""
