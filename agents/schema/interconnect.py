"""Ethernet and InfiniBand / RoCE / Omni-Path measurements."""

from agents.schema.types import counter, gauge, info, measurement, rate

NET = measurement(
    "net",
    "Per network interface, from /proc/net/dev.",
    ("interface",),
    counter("rx_bytes", "Bytes received.", type=int, telegraf="net.bytes_recv",
            node_exporter="node_network_receive_bytes_total"),
    counter("tx_bytes", "Bytes sent.", type=int, telegraf="net.bytes_sent",
            node_exporter="node_network_transmit_bytes_total"),
    counter("rx_packets", "Packets received.", type=int, telegraf="net.packets_recv",
            node_exporter="node_network_receive_packets_total"),
    counter("tx_packets", "Packets sent.", type=int, telegraf="net.packets_sent",
            node_exporter="node_network_transmit_packets_total"),
    counter("rx_errors", "Receive errors.", type=int, telegraf="net.err_in",
            node_exporter="node_network_receive_errs_total"),
    counter("tx_errors", "Transmit errors.", type=int, telegraf="net.err_out",
            node_exporter="node_network_transmit_errs_total"),
    counter("rx_drops", "Received packets dropped.", type=int, telegraf="net.drop_in",
            node_exporter="node_network_receive_drop_total"),
    counter("tx_drops", "Sent packets dropped.", type=int, telegraf="net.drop_out",
            node_exporter="node_network_transmit_drop_total"),
    rate("rx_bytes_per_second", "Receive rate over the interval."),
    rate("tx_bytes_per_second", "Transmit rate over the interval."),
)

INFINIBAND = measurement(
    "infiniband",
    "Per HCA port, from /sys/class/infiniband/DEVICE/ports/PORT. port_xmit_data and port_rcv_data "
    "count 4-byte words; the agent multiplies by 4. Ports without counters are skipped.",
    ("device", "port"),
    counter("xmit_bytes", "Bytes sent (port_xmit_data x 4).", type=int, telegraf="infiniband.port_xmit_data x 4",
            node_exporter="node_infiniband_port_data_transmitted_bytes_total"),
    counter("rcv_bytes", "Bytes received (port_rcv_data x 4).", type=int, telegraf="infiniband.port_rcv_data x 4",
            node_exporter="node_infiniband_port_data_received_bytes_total"),
    counter("xmit_packets", "Packets sent.", type=int, telegraf="infiniband.port_xmit_packets",
            node_exporter="node_infiniband_port_packets_transmitted_total"),
    counter("rcv_packets", "Packets received.", type=int, telegraf="infiniband.port_rcv_packets",
            node_exporter="node_infiniband_port_packets_received_total"),
    counter("xmit_wait", "Ticks the port had data to send but no credits (congestion).", type=int,
            telegraf="infiniband.port_xmit_wait", node_exporter="node_infiniband_port_transmit_wait_total"),
    counter("symbol_error", "Minor link errors.", type=int, telegraf="infiniband.symbol_error",
            node_exporter="node_infiniband_symbol_error_total"),
    counter("link_downed", "Times the link went down.", type=int, telegraf="infiniband.link_downed",
            node_exporter="node_infiniband_link_downed_total"),
    gauge("state", "Port state number (4 = ACTIVE).", type=int, node_exporter="node_infiniband_state_id"),
    gauge("rate_bytes_per_second", "Link rate as the port reports it (e.g. 200 Gb/sec = 25e9).",
          node_exporter="node_infiniband_rate_bytes"),
    info("link_layer", "InfiniBand or Ethernet (RoCE)."),
    rate("xmit_bytes_per_second", "Transmit rate over the interval."),
    rate("rcv_bytes_per_second", "Receive rate over the interval."),
)

INFINIBAND_HW = measurement(
    "infiniband_hw",
    "Vendor hw_counters of an HCA port (e.g. out_of_buffer, rnr_nak_retry_err), one series per counter.",
    ("device", "port", "counter"),
    counter("value", "The counter's value.", type=int, telegraf="infiniband_hw.*",
            node_exporter="node_infiniband_* (hw)"),
)

MEASUREMENTS = (NET, INFINIBAND, INFINIBAND_HW)
