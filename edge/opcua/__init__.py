"""OPC UA: the line as a PackML object (OPC 30050) for SCADA and MES, encrypted and logged in.

`edge.opcua.server` serves it, `edge.opcua.identity` logs sessions in through the line's accounts,
`edge.opcua.certs` makes and checks the certificates, `edge.opcua.cli` is ``lineside opcua``. Nothing is imported
here, so the command line loads quickly.
"""
