#include "rpc/unix_channel.h"

namespace nvdp::rpc {

std::shared_ptr<grpc::Channel> UnixChannel(const std::string& socket_path, int max_receive_bytes) {
  grpc::ChannelArguments args;
  // gRPC shares connections between channels to the same target by default. After kubelet or a
  // plugin restarts, a shared connection can sit in reconnect backoff while the new socket
  // already serves; a channel of our own dials at once.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  if (max_receive_bytes > 0) args.SetMaxReceiveMessageSize(max_receive_bytes);
  return grpc::CreateCustomChannel("unix:" + socket_path, grpc::InsecureChannelCredentials(), args);
}

}  // namespace nvdp::rpc
