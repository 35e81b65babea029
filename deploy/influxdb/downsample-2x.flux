// fleetwise on InfluxDB 2.x: 5-minute means of every numeric field from "fleet" into "fleet_5m"
// (created by influxdb-2x.sh; docs/deploy.md "InfluxDB 2.x"). Runs every 5 minutes over the last 30,
// so points an agent's spool delivers late after a short outage are downsampled too. Field names stay
// as they are (unlike 1.x's mean(*)), so `?rp=five_minutes` reads the same schema at coarser steps.
import "types"

option task = {name: "fleetwise-downsample-5m", every: 5m, offset: 1m}

from(bucket: "fleet")
    |> range(start: -30m)
    // Strings (model names, allocation sources) and booleans have no mean; integers become floats.
    |> filter(fn: (r) => types.isType(v: r._value, type: "float") or types.isType(v: r._value, type: "int"))
    |> aggregateWindow(every: 5m, fn: mean, createEmpty: false)
    |> to(bucket: "fleet_5m")
