"""Frame sources: image folders (+ labels) and video files."""
