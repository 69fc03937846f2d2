OPTIONS sip:${DADDR}:${DPORT} SIP/2.0
Via: SIP/2.0/UDP ${SADDR}:${SPORT};branch=z9hG4bK${RAND_ALPHANUM=16};rport
Max-Forwards: 70
From: <sip:probe@${SADDR}:${SPORT}>;tag=${RAND_ALPHANUM=10}
To: <sip:${DADDR}:${DPORT}>
Call-ID: ${RAND_DIGIT=12}@${SADDR}
CSeq: 1 OPTIONS
Contact: <sip:probe@${SADDR}:${SPORT}>
Accept: application/sdp
Content-Length: 0

