"""Event time: window assignment (tumbling, sliding, calendar sessions) and exchange calendars."""
