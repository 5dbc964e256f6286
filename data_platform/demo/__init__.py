"""The demo: sample plant sources on embedded servers, started by `just demo`."""
