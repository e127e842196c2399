"""Temporal strategies and the per-camera stream bookkeeping they rely on."""
