"""The built-in SMART on FHIR authorization server (SMART App Launch 2.x): authorize, token,
introspect, revoke, EHR launch and account and client administration, free of HTTP objects."""
