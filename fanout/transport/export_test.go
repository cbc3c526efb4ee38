package transport

// MaskedFrame is clientFrame for the external tests (package transport_test).
var MaskedFrame = clientFrame
