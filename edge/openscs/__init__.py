"""OPEN-SCS (OPC 30260): serials drawn from a Level-3 serial pool server over OPC UA, their states reported back."""
