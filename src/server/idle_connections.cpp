#include "server/idle_connections.hpp"

namespace crew::detail {

void IdleConnections::add(Kind kind, std::weak_ptr<Connection> connection, Slot& slot) {
  std::lock_guard lock(mu_);
  if (slot.listed) list_of(slot.kind).erase(slot.it);
  auto& list = list_of(kind);
  slot.it = list.insert(list.end(),
                        Entry{std::move(connection), &slot, std::chrono::steady_clock::now()});
  slot.kind = kind;
  slot.listed = true;
}

void IdleConnections::remove(Slot& slot) noexcept {
  std::lock_guard lock(mu_);
  if (!slot.listed) return;
  list_of(slot.kind).erase(slot.it);
  slot.listed = false;
}

std::vector<std::shared_ptr<Connection>> IdleConnections::take_oldest(
    std::size_t count, std::chrono::steady_clock::duration min_idle) {
  std::vector<std::shared_ptr<Connection>> taken;
  const auto listed_before = std::chrono::steady_clock::now() - min_idle;
  std::lock_guard lock(mu_);
  for (auto* list : {&new_, &kept_alive_, &half_closed_}) {
    // Oldest first: past the first one listed too recently, all are.
    for (auto it = list->begin();
         it != list->end() && taken.size() < count && it->since <= listed_before;) {
      // A connection being destroyed stays listed until its destructor's remove(): skip it.
      auto connection = it->connection.lock();
      if (!connection) {
        ++it;
        continue;
      }
      it->slot->listed = false;
      it = list->erase(it);
      taken.push_back(std::move(connection));
    }
  }
  return taken;
}

}  // namespace crew::detail
