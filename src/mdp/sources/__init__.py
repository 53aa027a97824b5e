"""Sources: file replay, synthetic feed, and the event-time watermark rule they share."""
