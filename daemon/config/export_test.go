package config

// UncommentBackendsForTest is uncommentBackends for the external tests.
var UncommentBackendsForTest = uncommentBackends
