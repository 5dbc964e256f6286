"""A stand-in that answers as InfluxDB 1.x, 2.x or 3.x does, in front of a real influxd 1.x."""
