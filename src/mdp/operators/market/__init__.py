"""Market-data operators other than bars: dedupe, throttle, key router, joins (as-of and windowed),
quote resampling, sequence checks and the consolidated best bid and offer (``nbbo``)."""
