"""The DealerPulse agent: runs on dealer servers; needs only grpcio, protobuf, psutil."""
