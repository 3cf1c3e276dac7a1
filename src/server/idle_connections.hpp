// The connections of a crew::LatencyServer that wait for the first byte of a request (or wait a
// request's latency for a client that half-closed), oldest first, so that at the descriptor limit
// the server can close some of them to accept new ones (as nginx reuses its idle keep-alive
// connections): a few hundred silent sockets then cost a client its wait in the backlog, not its
// answer.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <vector>

namespace crew::detail {

class Connection;

class IdleConnections {
 public:
  enum class Kind {
    kNew,        // accepted, no byte received yet: closed first (what a flood of sockets makes)
    kKeptAlive,  // served at least one request, now waiting for the next
    // A request waits its latency for a client that half-closed: perhaps waiting for the answer
    // (nc -N), perhaps gone. Closed last: it is the only kind that loses an answer.
    kHalfClosed,
  };

  // A connection's place in the lists. Guarded by the registry's mutex: a connection touches it
  // only through add and remove, the server only through take_oldest.
  struct Slot;
  struct Entry {
    std::weak_ptr<Connection> connection;
    Slot* slot;  // inside the connection, so valid while the connection lives
    std::chrono::steady_clock::time_point since;  // when it was listed
  };
  struct Slot {
    bool listed = false;
    Kind kind = Kind::kNew;
    std::list<Entry>::iterator it;
  };

  // Lists `connection` as idle (the newest of its kind); a listed slot is moved to the end.
  void add(Kind kind, std::weak_ptr<Connection> connection, Slot& slot);
  // Unlists the slot, if listed. Thread safety: safe.
  void remove(Slot& slot) noexcept;
  // Unlists and returns up to `count` idle connections still alive and listed at least
  // `min_idle` ago, new ones before kept-alive ones before half-closed ones, the longest idle
  // first. A connection accepted a moment ago is most likely a client about to send its request
  // (its connect returned, its send has not run yet): closing it would lose that request and
  // free a descriptor only for the next such client. Thread safety: safe.
  [[nodiscard]] std::vector<std::shared_ptr<Connection>> take_oldest(
      std::size_t count, std::chrono::steady_clock::duration min_idle);

 private:
  std::list<Entry>& list_of(Kind kind) {
    return kind == Kind::kNew ? new_ : kind == Kind::kKeptAlive ? kept_alive_ : half_closed_;
  }

  std::mutex mu_;
  // Guarded by mu_; oldest at the front.
  std::list<Entry> new_;
  std::list<Entry> kept_alive_;
  std::list<Entry> half_closed_;
};

}  // namespace crew::detail
