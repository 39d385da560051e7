"""What a run is on disk (layout) and which share of it this host owns (hosts)."""
