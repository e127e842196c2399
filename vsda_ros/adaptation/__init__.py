"""Adaptation to a vehicle's own unlabelled video (``vsda adapt``)."""
