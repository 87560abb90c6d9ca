// Package app is the sender service's procedure for one SendTask: decode,
// claim the send through the recorder, resolve the lease's token, pace the
// phone number, call WhatsApp with bounded retries, publish the SendResult,
// and tell the caller whether to ack or nack the Pub/Sub message.
//
// The procedure keeps the delivery guarantees of docs/architecture.md:
//
//   - Nothing is sent without a SEND claim, and a claimed send always ends in
//     a published result (SENT or FAILED) unless WhatsApp may have accepted it
//     without telling us: then nothing is published and the claim expires into
//     UNKNOWN, rather than risking a second message to the driver.
//   - Everything that can fail without a claim (token lookup, pacing) happens
//     before claiming, so a transient failure there is a plain nack.
//   - A free-form message (text, interactive) to a driver outside WhatsApp's 24-hour window (the
//     claim answers when they last wrote) is recorded FAILED with
//     outside_24h_window without calling WhatsApp, which would refuse it;
//     Config.EnforceWindow turns the check off.
//   - Work after a SEND claim is detached from the caller's cancellation
//     (shutdown) and bounded by the claim's lease instead, so a stopping
//     sender does not abandon a send between the WhatsApp call and the result.
//
// Its dependencies are small interfaces (the recorder's gRPC client, the
// WhatsApp client, a token resolver, a publisher, a clock) so that each
// decision is unit-tested.
package app
