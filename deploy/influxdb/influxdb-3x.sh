#!/bin/sh
# fleetwise on InfluxDB 3 (Core or Enterprise) through its v1 compatibility API (docs/deploy.md
# "InfluxDB 3"): /write?db= and /query?db= (InfluxQL) with a token. Run with INFLUXDB3_HOST_URL and
# INFLUXDB3_AUTH_TOKEN (an admin token) in the environment, so the token is not on the command line.
set -eu

# A database's retention period is set when it is created (in Core it cannot change afterwards).
influxdb3 create database --retention-period 15d fleet
# Long-range trends: a second database holding 5-minute means, kept 400 days, filled by a scheduled
# processing-engine plugin (InfluxDB 3 has no continuous queries and does not run Flux); see the docs.
influxdb3 create database --retention-period 400d fleet_5m

# Tokens for the agents (write to fleet) and the analysis host (read both); Enterprise grants per database,
# Core has admin tokens only. The token is printed once: store it in the file that
# FLEETWISE_INFLUXDB_TOKEN_FILE names, mode 0400.
#   influxdb3 create token --permission "db:fleet:write" --name fleetwise-agents            # Enterprise
#   influxdb3 create token --permission "db:fleet,fleet_5m:read" --name fleetwise-analysis  # Enterprise
#   influxdb3 create token --admin                                                          # Core
