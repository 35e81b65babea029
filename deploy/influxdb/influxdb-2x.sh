#!/bin/sh
# fleetwise on InfluxDB 2.x through its v1 compatibility API (docs/deploy.md "InfluxDB 2.x"). The agents
# and the analysis host speak /write and /query (InfluxQL), which 2.x serves for a bucket that has a DBRP
# mapping (database/retention policy -> bucket). Run with the influx CLI configured for an operator
# token (`influx config create ...`); ORG names your organization.
set -eu
ORG="${ORG:?set ORG to your InfluxDB organization}"

# Raw data, 15 days (analysis reads 7; the weekly report the last complete week), and the 5-minute bucket.
influx bucket create --org "$ORG" --name fleet --retention 15d --shard-group-duration 1d
influx bucket create --org "$ORG" --name fleet_5m --retention 400d --shard-group-duration 7d
raw=$(influx bucket list --org "$ORG" --name fleet --hide-headers | cut -f1)
five=$(influx bucket list --org "$ORG" --name fleet_5m --hide-headers | cut -f1)

# The DBRP mappings: InfluxQL's "fleet"."autogen" is the raw bucket (and the default for db=fleet), and
# "fleet"."five_minutes" the downsampled one.
influx v1 dbrp create --org "$ORG" --db fleet --rp autogen --bucket-id "$raw" --default
influx v1 dbrp create --org "$ORG" --db fleet --rp five_minutes --bucket-id "$five"

# Credentials. Either a token (FLEETWISE_INFLUXDB_TOKEN_FILE on the node, sent as "Authorization: Token"):
#   influx auth create --org "$ORG" --write-bucket "$raw" --description fleetwise-agents
# or a v1 user and password (influxdb://fleetwise@tsdb:8086/fleet + FLEETWISE_INFLUXDB_PASSWORD_FILE);
# without --password the CLI prompts for it, so it never lands in the shell history:
influx v1 auth create --org "$ORG" --username fleetwise --write-bucket "$raw"
influx v1 auth create --org "$ORG" --username fleetwise_ro --read-bucket "$raw" --read-bucket "$five"

# The downsampling task (InfluxDB 2.x runs Flux tasks; there are no continuous queries).
influx task create --org "$ORG" --file "$(dirname "$0")/downsample-2x.flux"
