// Package app is the recorder: the only writer of pipeline state to
// Firestore, behind the wadispatch.v1.Recorder gRPC service. Its use cases
// are the methods of Service. Each change of a message's state is a pure
// decision (decide.go) from the State read to the next State and a Plan,
// handed to Store.Update (store.go, the ports: Store for the default
// database, Ancillary for the ancillary one). The package does not import
// Firestore: services/recorder/internal/adapters/firestore implements the
// ports, reads and commits (with the precondition and the retries), and is
// the one place a State becomes fields; its failures reach the use cases
// classified, as StoreError.
//
// Data it owns (default database unless noted):
//
//   - {messagePath}/dispatch/state: the claim (claimId, claimant, claimedAt,
//     leaseExpiresAt while a claim has no outcome and is not released;
//     released, releasedAt, releaseReason once its holder released it),
//     status, outcome, wamid,
//     error, a copy of the SendTask (no token) for listing and resending.
//     Every change to it is a commit with a precondition (must not exist, or
//     the update_time read, or for the result of a first claim the
//     update_time that claim's commit gave it, which ClaimSend answers as
//     state_version and the SendResult carries back: no read), so
//     concurrent claims and repeated results are decided by Firestore, not
//     by timing.
//   - the message document: status, whatsappMessageId, whatsappError,
//     failureReason, statusReason, sentAt, failedAt, deliveredAt, readAt,
//     statusUpdatedAt; updated in the same commit as the state. A message
//     ingest refused (refusal.go) gets status FAILED, failureReason and
//     statusReason, and a state with no claim, only if it had no state.
//   - the sending user's metrics document (Config.MetricsDocPath):
//     numberOfWhatsappMessagesSent. The commit that records the SENT
//     outcome creates the message's entry in the user's ledger,
//     {metricsDoc}/sentLedger/{id of the message path} (messagePath,
//     countedAt), so it counts once per message; a folder
//     (RunCounterFolder, fold.go) moves the entries into the counter, one
//     transaction per metrics document and up to 400 entries that reads
//     them, increments by those still there and deletes them. Firestore
//     sustains about one write per second to one document: a user's burst
//     of 1,000 sends is three writes to the counter, not 1,000 commits
//     queued on it. The counter trails the sends by about the fold
//     interval; folds of several recorders at once conflict and retry, and
//     each entry counts in the one that deletes it.
//   - pricing on the state and the message document (pricingModel,
//     category, type, firstSeenAt): WhatsApp's pricing of the message, from
//     the first status webhook stating one (sent and delivered do), never
//     changed after (cost.go). The commit that writes it creates the
//     message's entry in its lease's cost ledger,
//     leasecompany/{leaseId}/whatsappCostLedger/{id of the message path}
//     (messagePath, month of that status in UTC, pricingModel, category,
//     type, countedAt), so it counts once per message; the same folder
//     moves the entries into leasecompany/{leaseId}/whatsappCosts/{YYYY-MM}
//     (messages, categories.{category}.messages,
//     categories.{category}.types.{type}), one transaction per document,
//     which GetCosts reads.
//   - whatsappMessageIndex/{wamid}: wamid → message (messagePath,
//     leaseId, enquiryId, driverMobileNumber), created in that same commit
//     with the precondition "must not exist", so a status webhook finds its
//     message with one read and the commit reads nothing for it.
//   - earlyStatuses on the state: status webhooks of the current claim's
//     call (named by their biz_opaque_callback_data) that came before its
//     outcome; applied in the commit that records it, or resolving the
//     claim (early.go).
//   - whatsappMessageIndex/{wamid} before its entry: status webhooks of a
//     wamid no result recorded that no waiting claim claims (wamid, keptAt,
//     statuses.{status}, namedMessagePath: the message a stale callback
//     named), written with merge, creating the document. A result's create
//     of the document then fails; the store reads it with the state, the
//     decision applies them with the outcome, and the commit writes the
//     entry over them, deleting them, preconditioned on the document as
//     read. A status kept after the entry (its look at the index raced the
//     result) reads the index again after keeping and applies itself.
//     Dropped by the sweep after Config.PendingStatusTTL, with the document
//     when it holds no entry (status.go). Its query (keptAt, collection
//     whatsappMessageIndex) is served by Firestore's automatic single-field
//     index; documents holding no kept status have no keptAt.
//   - ancillary database, whatsapp/{driver}/enquiryMessages/{enquiryId}:
//     arrayOfWhatsappMessageIds (arrayUnion) and details, written after the
//     commit and retried until it lands before a result counts as recorded.
//     A driver's reply adds lastInboundAt and lastInboundMessageId.
//   - ancillary database, whatsapp/{driver}: the driver's 24-hour window,
//     lastInboundAt and lastInboundAtByPhoneNumberId.{phoneNumberId}, moved
//     forward only; ClaimSend of a text message reads it once and answers
//     driver_last_inbound_at.
//   - a driver's reply: a chatMessages document with source "driver" in the
//     enquiry of the message it quotes (wamid index) or of the driver's
//     latest record (lastMessageAt), id dispatch.DriverReplyDocID(wamid), created
//     only if absent (inbound.go).
//
// Indexes the queries need on Firestore (collection group `dispatch`,
// single-field, collection-group scope): status (ListUnknown),
// leaseExpiresAt (the sweeper), and driverMobileNumber + enquiryId
// (ListEnquiryMessages, equality only, served by index merging). The
// folder's queries of collection groups `sentLedger` and
// `whatsappCostLedger` have no filter and are in name order, which needs no
// declared index.
package app
