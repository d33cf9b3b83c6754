/**
 * Numbers shared by IPv4 and IPv6: the IANA "Assigned Internet Protocol Numbers" registry, used by
 * the IPv4 Protocol field (RFC 791 §3.1) and the IPv6 Next Header field (RFC 8200 §3), including
 * the IPv6 extension header types (RFC 8200 §4).
 */
export const IpProtocol = {
  /** IPv6 Hop-by-Hop Options header, RFC 8200 §4.3. */
  HOP_BY_HOP: 0,
  TCP: 6,
  /** IPv6 Routing header, RFC 8200 §4.4. */
  ROUTING: 43,
  /** IPv6 Fragment header, RFC 8200 §4.5. */
  FRAGMENT: 44,
  /** Encapsulating Security Payload, RFC 4303. */
  ESP: 50,
  /** Authentication Header, RFC 4302. */
  AH: 51,
  /** "No Next Header", RFC 8200 §4.7. */
  NO_NEXT_HEADER: 59,
  /** IPv6 Destination Options header, RFC 8200 §4.6. */
  DESTINATION_OPTIONS: 60,
} as const;
