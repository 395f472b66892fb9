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

std::shared_ptr<grpc::Channel> UnixChannel(const std::string& socket_path);

}  // namespace nvdp::rpc
