package storedb

// ParseMigrationsForTest exposes parseMigrations to the tests.
var ParseMigrationsForTest = parseMigrations
