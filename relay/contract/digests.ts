// How the relay compares the secrets it is given and how it names the ones it
// reports: both sides compute these, so each is defined here, once.
import { createHash } from "node:crypto";

const sha256Hex = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

/**
 * Hex SHA-256 of an inbound or submission password: the config's `passwordSha256`.
 * Passwords are 256-bit random, so a fast digest suffices.
 */
export function passwordDigest(password: string): string {
  return sha256Hex(password);
}

/** Hex SHA-256 of the control API's bearer token: the config's `listeners.control.tokenSha256`. */
export function controlTokenDigest(token: string): string {
  return sha256Hex(token);
}

/** Hex SHA-256 of a verification token: the key under which the relay keeps a receipt, and by which the operator asks for it. */
export function verificationTokenDigest(token: string): string {
  return sha256Hex(token);
}

/** Hex SHA-256 of a login ("username\0password"): how the relay tells the operator which login it used. */
export function loginDigest(username: string, password: string): string {
  return sha256Hex(`${username}\0${password}`);
}

/**
 * A password as the relay reads it from its file (`passwordFile`): surrounding
 * whitespace, such as the newline an editor or `echo` leaves, is not part of it.
 */
export function secretFileText(raw: string): string {
  return raw.trim();
}
