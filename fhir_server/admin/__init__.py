"""Server-host administration: clinics, accounts and clients from the command line, and the demo
set-up of `fhir-server serve` (SMART App Launch 2.x clients and users of the built-in
authorization server, and the FHIR resources they stand for)."""
