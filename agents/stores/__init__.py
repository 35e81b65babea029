"""Where telemetry is kept: InfluxDB (v1 or v2 write API) or the embedded Parquet store."""
