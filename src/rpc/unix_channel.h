// gRPC channels to unix sockets that behave like kubelet's own dials: every channel gets its own
// connection (no sharing of a connection that broke when the peer restarted) and reconnects
// quickly. Use for every dial between the plugin and kubelet, in both directions.
//
// Thread-safe (stateless).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace nvdp::rpc {

// `max_receive_bytes` > 0 bounds the size of a message the channel accepts (gRPC's default, 4 MiB,
// otherwise).
std::shared_ptr<grpc::Channel> UnixChannel(const std::string& socket_path,
                                           int max_receive_bytes = 0);

}  // namespace nvdp::rpc
