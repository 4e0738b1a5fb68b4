"""The values users and items hand headrace, read one way everywhere: durations
("10ms", "5m") and an item's fields by name."""
